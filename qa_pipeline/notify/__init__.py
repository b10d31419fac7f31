"""Supervisor notifications: critical findings and low final scores sent to a webhook, WeCom
and DingTalk group robots and e-mail, from a sink in the pipeline's FanOut.

    sink = NotifierSink(config.notify, registry=registry, observer=metrics)
    fanout = FanOut([..., ("notify", sink)], metrics)

Metric-based alerts (latency, drops, failure rates) stay with Prometheus + Alertmanager.
"""

from .config import NotifyConfig, load_notify_config
from .message import Notification
from .notifiers import NotifyError, build_notifier, dingtalk_sign, verify_webhook, webhook_signature
from .sink import NotifierSink, NotifyMetrics

__all__ = [
    "Notification",
    "NotifierSink",
    "NotifyConfig",
    "NotifyError",
    "NotifyMetrics",
    "build_notifier",
    "dingtalk_sign",
    "load_notify_config",
    "verify_webhook",
    "webhook_signature",
]
