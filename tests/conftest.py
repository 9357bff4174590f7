import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# tests/mpy holds scripts for the MicroPython harness (run by test_micropython.py), not pytest files.
collect_ignore = ["mpy"]
