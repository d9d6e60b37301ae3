"""The daemon: its wiring (``daemon.py``), the HTTP ingress, the spool reader, metrics, the
METADATA store, logging and the event loop, and the client the CLI posts with. May use
``config/`` and ``queue/``; never imports pytest or a driver."""
