"""`python -m fastrnn` prints fastrnn.show_config()."""
from . import show_config

show_config()
