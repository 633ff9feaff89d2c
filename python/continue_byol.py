"""Launcher of byol_torch.train (a script path, as torchrun wants): python3 python/continue_byol.py --help"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from byol_torch.train import main  # noqa: E402

main()
