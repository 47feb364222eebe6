"""Built-in tasks. Importing this package registers them in ``TASKS``."""

from . import ba_2motifs, ba_shapes, mutagenicity, tree_cycles  # noqa: F401  (graph tasks)
from . import digit_grid, digits, mnist, planted_text, shapes  # noqa: F401  (registration side effects)
from . import movie_rationales, sst2  # noqa: F401  (hub text tasks)
