import sys
from pathlib import Path

# _utils modules are plain Python: unit tests import them as Salt's loader does (by name).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_utils"))
