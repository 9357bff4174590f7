"""updater: OSTree-style atomic, content-addressed updates for small embedded Linux devices.

The device core is this package minus ``updater.host``; it runs on CPython 3.9+ and on
MicroPython. ``updater.host`` holds the build-server and factory tools (CPython only).
"""
__version__ = "0.1.0"
