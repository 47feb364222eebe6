"""The Hugging Face Space's entry point (``app_file: app.py``): a Space holds this file, the
``requirements.txt`` beside it, the repository's ``.streamlit/config.toml`` and a copy of the
repository in the folder ``xaiboard/`` (see ``space/README.md``).

The app imports ``xaiboard.leaderboard``; on a Space the repository is not installed, so the
folder holding the copy goes on the import path, and the app script runs as Streamlit would
run it. The results shown are ``$XAIBOARD_SUBMISSIONS`` (a Space variable), by default the
copy's ``submissions/``.
"""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
runpy.run_path(str(HERE / "xaiboard" / "leaderboard" / "app.py"), run_name="__main__")
