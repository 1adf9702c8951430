#!/usr/bin/env python
"""Run an attexp job or pipeline: `python run_job.py [CONFIG] [--base-dir DIR] [--dry-run] ...`."""

import sys

from attexp.cli import main

if __name__ == "__main__":
    sys.exit(main())
