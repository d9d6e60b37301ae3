"""push-notification-webhook: any mail-store event to any HTTP endpoint.

Method, URL, headers and body are sandboxed jinja2 templates; requests can be signed per
the Standard Webhooks spec; presets cover generic JSON, ntfy, Gotify and Slack-compatible
incoming webhooks.
"""

from .driver import WebhookDriver
from .presets import PRESETS

__all__ = ["PRESETS", "WebhookDriver"]
