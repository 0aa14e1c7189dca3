"""``install(events)``, the one call a locustfile makes (the public path since the first release).

It lives in `tritonload.load.session`; this module keeps
``from tritonload.session import install`` working for existing locustfiles.
"""

from tritonload.load.session import install

__all__ = ["install"]
