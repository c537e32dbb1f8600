"""The website chat channel: an embeddable widget (``/widget.js``) speaking ``/ws/chat`` to the hub."""
