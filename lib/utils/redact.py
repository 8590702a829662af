"""Credentials out of stream addresses and of whatever OpenCV or FFmpeg print about them.

A URL may carry a secret in its user info (`rtsp://user:password@host`) or in its query
(`?token=...`, `&api_key=...`, `&X-Amz-Signature=...`), raw or percent-encoded. Messages, file
names, JSON outputs and window titles show `public_url(url)`; text printed by native code is
passed through `Redactor(url).clean(text)`, which also removes each secret wherever it appears.
"""
import re
from urllib.parse import quote, unquote, urlsplit

# Query parameter names whose values are credentials (matched case-insensitively, as a part of the name).
SECRET_NAMES = re.compile(r"token|key|pass|pwd|secret|sig|auth|cred|session|sid|jwt|cookie|code", re.IGNORECASE)
HIDDEN = "***"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _secret_pairs(query):
    """(name, value) of the query's parameters whose names say they are credentials."""
    pairs = (part.partition("=") for part in query.split("&") if part)
    return [(name, value) for name, _, value in pairs if value and SECRET_NAMES.search(unquote(name))]


def public_url(url):
    """`url` without its user name and password, and with credential query values replaced by ***."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    query = "&".join(f"{name}={HIDDEN}" if value and SECRET_NAMES.search(unquote(name)) else
                     (f"{name}={value}" if sep else name)
                     for name, sep, value in (p.partition("=") for p in parts.query.split("&") if p))
    return parts._replace(netloc=host + port, query=query).geturl()


class Redactor:
    """Removes the credentials of `url` from text: every URL in it made public, and each secret of
    `url` (user name, password, credential query values; raw, percent-decoded and -encoded) hidden."""

    def __init__(self, url):
        parts = urlsplit(url)
        raw = [parts.username, parts.password, *(value for _, value in _secret_pairs(parts.query))]
        forms = {form for secret in raw if secret
                 for form in (secret, unquote(secret), quote(unquote(secret), safe=""))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def clean(self, text):
        text = _URL.sub(lambda m: public_url(m.group(0)), text)
        for secret in self._secrets:
            text = text.replace(secret, HIDDEN)
        return text
