import sys

from dynamics.figures import main

sys.exit(main())
