# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m ansible_collections.servelab.vllm.plugins.module_utils.bench"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
