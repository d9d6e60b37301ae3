"""What ships to a Dovecot host: the bridge Lua script (``bridge.lua``) and ``dovecot-config`` (``setup.py``)."""
