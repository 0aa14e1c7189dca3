import sys

from tritonload.cli.main import main

sys.exit(main())
