import os
import sys

import jax

# test_sweep_cli.py still imports its oracles as a top-level module (``from oracles import``);
# the others import ``tests.oracles``. Remove this line once no test imports it that way.
sys.path.insert(0, os.path.dirname(__file__))

jax.config.update("jax_enable_x64", True)
