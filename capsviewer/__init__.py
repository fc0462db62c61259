"""capsviewer: explore Capsule Networks (Sabour, Frosst & Hinton 2017).

The numerical core (``maths``, ``models``, ``data``, ``training``, ``analysis``) never imports
Qt, so it can be used and tested headless; the desktop app builds on top of it.
"""

__version__ = "0.1.0"
