"""The catalogue's field types for the API's request and response models; defined in
``fleet.fields``, below both the domain and the web layer."""

from fleet.fields import *  # noqa: F403  (re-exported unchanged)
from fleet.fields import __all__ as __all__
