"""Host tools (CPython only): commit, delta generation, signing, serving, provisioning, console."""
