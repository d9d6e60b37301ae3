"""Configuration mistakes stop the instance at start-up with one line naming instance and
setting; 2.3 and 2.4 setting names both work."""

from __future__ import annotations

import pytest
from ox_testkit import PASSWORD
from push_notification.drivers import DriverContext, create_instance
from push_notification.errors import ConfigError
from push_notification.settings import Settings
from push_notification_ox import OxDriver
from push_notification_ox.config import read_config

URL = "http://login:pass@127.0.0.1:8009/preliminary/http-notify/v1/notify"


def start(settings: dict[str, object]) -> None:
    context = DriverContext(instance="ox1", driver="ox", settings=Settings.from_dict("ox1", settings))
    create_instance(context, OxDriver)


def config_error(settings: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        start(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert "push_notification ox1" in message
    return message


def test_url_is_required() -> None:
    assert "setting 'url': is required" in config_error({})


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://host/x", "http:///nohost", f"http://login:{PASSWORD}@host:99999999/x"]
)
def test_an_unusable_url_is_rejected_without_showing_its_password(url: str) -> None:
    message = config_error({"url": url})
    assert "setting 'url'" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("key", ["cache_ttl", "cache_lifetime"])
@pytest.mark.parametrize("value", ["soon", "0", "-5s"])
def test_a_bad_cache_ttl_is_rejected(key: str, value: str) -> None:
    assert f"setting '{key}'" in config_error({"url": URL, key: value})


def test_an_unknown_setting_is_named() -> None:
    message = config_error({"url": URL, "ox_timeout": "5"})
    assert "setting 'ox_timeout': unknown setting" in message


def test_a_missing_ca_file_is_reported_at_start() -> None:
    message = config_error({"url": "https://ox.example/notify", "ssl_client_ca_file": "/nonexistent/ca.pem"})
    assert "setting 'ssl_client_ca_file': cannot load CA certificates" in message


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"timeout_msecs": 500, "http_client_request_timeout": "1s"}, "timeout_msecs"),
        ({"max_retries": 1, "http_client_request_max_attempts": 2}, "max_retries"),
        ({"http_client_request_max_attempts": 0}, "http_client_request_max_attempts"),
        ({"max_retries": "many"}, "max_retries"),
        ({"http_client_max_parallel_connections": 0}, "http_client_max_parallel_connections"),
        ({"user_from_metadata": "maybe"}, "user_from_metadata"),
        ({"ssl_client_require_valid_cert": "perhaps"}, "ssl_client_require_valid_cert"),
    ],
)
def test_bad_http_settings_are_rejected(settings: dict[str, object], key: str) -> None:
    assert f"setting '{key}'" in config_error({"url": URL, **settings})


def test_defaults_are_dovecot_244s() -> None:
    config = read_config(Settings.from_dict("ox1", {"url": URL}))
    assert (config.cache_ttl, config.request_timeout, config.max_attempts) == (60.0, 2.0, 2)
    assert config.user_from_metadata is False
    assert config.ssl_context is None


def test_dovecot_23_names_are_understood() -> None:
    settings = {"url": URL, "cache_lifetime": "30s", "timeout_msecs": 500, "max_retries": 3, "user_from_metadata": ""}
    config = read_config(Settings.from_dict("ox1", settings))
    assert (config.cache_ttl, config.request_timeout, config.max_attempts) == (30.0, 0.5, 4)
    assert config.user_from_metadata is True


def test_the_requested_url_carries_no_credentials() -> None:
    config = read_config(Settings.from_dict("ox1", {"url": f"https://login:{PASSWORD}@ox.example:8009/notify?x=1"}))
    assert str(config.request_url) == "https://ox.example:8009/notify?x=1"
    assert config.display_url == "https://login:***@ox.example:8009/notify?x=***"  # query values may be secrets
    assert config.authorization is not None and config.ssl_context is not None


def test_a_missing_ca_directory_is_reported_at_start() -> None:
    message = config_error({"url": "https://ox.example/notify", "ssl_client_ca_dir": "/nonexistent/certs"})
    assert "setting 'ssl_client_ca_dir': /nonexistent/certs is not a directory" in message
