"""What several commands share: help texts and the hidden-old-name option."""

from __future__ import annotations

import argparse

DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda, cuda:N (default: auto)"

OLD_NAME = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}  # a hidden old spelling that still works
