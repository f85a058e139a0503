"""Schemathesis hooks for scripts/fuzz.sh.

Each hook turns a generated value into another one of the same validity,
for rules that JSON Schema cannot state: the request stays as valid (or as
invalid) as it was generated, so every check still applies to it.
"""

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

import schemathesis
from schemathesis.transport.prepare import get_exclude_headers

# What Rust parses as an unsigned integer: "+7" and "007" are 7 too.
_INTEGER = re.compile(r"^\+?[0-9]+$")
# What `Idempotency-Key` accepts.
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7E]{1,255}$")
# A date-time's year and the rest of it.
_YEAR_FIRST = re.compile(r"^([0-9]{4})(-.*)$", re.DOTALL)
# A date-time's date and the rest of it (time, fraction, offset).
_DATE_FIRST = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt].*)$", re.DOTALL)
# The seq every bulk operation may name: scripts/fuzz/seed.py makes more
# events than this before fuzzing starts, and a user's seq only grows.
_SEEDED_SEQ = 40


@schemathesis.hook
def before_call(context, case, kwargs):
    # A case that leaves out a header (e.g. `Authorization`) is answered
    # before anything else is looked at, and any edit would make it put the
    # header back (an edited case is judged valid or invalid anew, by its
    # parameters alone).
    if get_exclude_headers(case):
        return
    if case.operation.path == "/v1/me/events":
        _bound_long_poll(case)
    if not _is_positive(case):
        # Only valid requests must be accepted; invalid ones are refused
        # whatever the edits below would do.
        return
    if case.operation.path in ("/v1/notifications", "/v1/broadcasts"):
        _keep_expiry_in_range(case.body)
        _keep_delivery_in_range(case.body)
        _distinct_action_ids(case.body)
        _one_idempotency_key_per_body(case)
    if case.operation.path == "/v1/notifications/batch":
        for element in _batch_elements(case):
            _keep_expiry_in_range(element)
            _distinct_action_ids(element)
        _one_key_per_user_in_batch(case)
        _one_idempotency_key_per_body(case)
    if case.operation.path == "/v1/me/notifications/{id}/snooze":
        _keep_snooze_in_range(case)
    if case.operation.path in _BULK:
        _up_to_seq_within_history(case)
    if case.operation.path == "/v1/admin/webhooks" and case.method.upper() == "POST":
        _public_webhook_url(case)
    _user_ids_within_128_bytes(case)


_BULK = (
    "/v1/me/notifications/read-all",
    "/v1/me/notifications/seen-all",
    "/v1/me/notifications/archive-all",
    "/v1/me/notifications/delete-all",
)


def _public_webhook_url(case):
    """A valid webhook URL becomes one on TEST-NET-1 (192.0.2.0/24).

    JSON Schema's `uri` admits any scheme and any host, but a webhook must be
    http(s) on a host that resolves to public addresses only. TEST-NET-1 is
    public by that rule and routed nowhere, so the deliveries the fuzzing
    causes reach no one.
    """
    if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        digest = hashlib.sha256(case.body["url"].encode()).hexdigest()[:12]
        case.body["url"] = f"https://192.0.2.1/{digest}"


def _is_positive(case):
    return case.meta is not None and case.meta.generation.mode.is_positive


def _bound_long_poll(case):
    """Any valid `wait` above 1 s becomes 1 s.

    `GET /v1/me/events?wait=N` may legally hold the request for up to 60 s
    when no event arrives, and valid values are drawn from that whole range.
    Out-of-range and malformed values go out unchanged and must answer 400.
    """
    if not case.query:
        return
    wait = case.query.get("wait")
    if isinstance(wait, bool):
        return
    if isinstance(wait, int) and 1 < wait <= 60:
        case.query["wait"] = 1
    elif isinstance(wait, str) and _INTEGER.match(wait) and 1 < int(wait) <= 60:
        case.query["wait"] = "1"


def _batch_elements(case):
    """The publishes of a batch body (those that are objects)."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("notifications"), list):
        return []
    return [e for e in body["notifications"] if isinstance(e, dict)]


def _keep_expiry_in_range(body):
    """Moves the year of `expires_at` into the range the API accepts.

    The API takes an `expires_at` only in the future and, in UTC, before the
    year 10000 (openapi.yaml says so in words; JSON Schema has no keyword
    for it), while `format: date-time` draws any year from 0000 to 9999.
    The year alone moves, by whole multiples of 400 years: the calendar
    repeats every 400 years, so the value stays exactly as valid or invalid
    as it was drawn (leap days, seconds, offset and letter case included).
    The year it gets is after next year, so it is also after any
    `deliver_at` (at most 365 days ahead).
    """
    if not isinstance(body, dict) or not isinstance(body.get("expires_at"), str):
        return
    match = _YEAR_FIRST.match(body["expires_at"])
    if match is None:
        return
    year = drawn = int(match.group(1))
    # Up to a year from now may still be the past once the offset applies.
    while year <= datetime.now(timezone.utc).year + 1:
        year += 400
    # An offset west of UTC takes 9999-12-31 into the year 10000.
    if year == 9999:
        year -= 400
    if year != drawn:
        body["expires_at"] = f"{year:04d}{match.group(2)}"


def _keep_delivery_in_range(body):
    """Moves a `deliver_at` more than 360 days ahead into the next year.

    A publish may be scheduled at most 365 days ahead (openapi.yaml says so
    in words), while `format: date-time` draws any date up to 9999. A date
    in the past or the near future is left alone (published at once, or
    scheduled); a later one becomes 2 to 300 days from today: the drawn
    time of day and offset (less than a day either way) keep it inside the
    window, and the value stays exactly as valid as it was drawn.
    """
    if not isinstance(body, dict) or not isinstance(body.get("deliver_at"), str):
        return
    match = _DATE_FIRST.match(body["deliver_at"])
    if match is None:
        return
    try:
        drawn = datetime.strptime(body["deliver_at"][:10], "%Y-%m-%d").date()
    except ValueError:
        return
    today = datetime.now(timezone.utc).date()
    if drawn <= today + timedelta(days=360):
        return
    days = 2 + int(hashlib.sha256(body["deliver_at"].encode("utf-8", "surrogatepass")).hexdigest(), 16) % 299
    body["deliver_at"] = f"{(today + timedelta(days=days)).isoformat()}{match.group(1)}"


def _keep_snooze_in_range(case):
    """Moves the date of a snooze's `until` into the next 30 days.

    `until` must be in the future and at most 30 days ahead (openapi.yaml
    says so in words), while `format: date-time` draws any date. The date
    alone becomes 2 to 28 days from today: the drawn time of day and offset
    (less than a day either way) keep it inside the window, and the value
    stays exactly as valid as it was drawn (seconds, fraction, offset and
    letter case included).
    """
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("until"), str):
        return
    match = _DATE_FIRST.match(body["until"])
    if match is None:
        return
    days = 2 + int(hashlib.sha256(body["until"].encode("utf-8", "surrogatepass")).hexdigest(), 16) % 27
    date = (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%d")
    body["until"] = f"{date}{match.group(1)}"


def _up_to_seq_within_history(case):
    """Keeps a bulk operation's `up_to_seq` at or below the user's seq.

    An `up_to_seq` above the user's current seq answers 422 (a rule about
    the state, which no schema can state). Larger values wrap into
    0..`_SEEDED_SEQ`, a range every run has already reached. An integer
    drawn as a float (`7.0`, which JSON Schema counts as the integer 7) is
    written as the integer: the server reads integers without a fraction.
    """
    body = case.body
    if not isinstance(body, dict):
        return
    seq = body.get("up_to_seq")
    if isinstance(seq, float) and seq.is_integer():
        seq = int(seq)
    if isinstance(seq, int) and not isinstance(seq, bool):
        body["up_to_seq"] = seq % (_SEEDED_SEQ + 1) if seq > _SEEDED_SEQ else seq


def _distinct_action_ids(body):
    """Makes the ids of a publish's actions distinct.

    Action ids must be unique within the list, which JSON Schema cannot say
    of one member of objects that differ elsewhere. A repeated id gets its
    position in place of its last character (or appended, within 64
    characters), which keeps it 1–64 characters of `[A-Za-z0-9_.-]`.
    """
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
        return
    seen = set()
    for i, action in enumerate(body["actions"]):
        if not isinstance(action, dict) or not isinstance(action.get("id"), str):
            continue
        action_id = action["id"]
        while action_id in seen:
            action_id = (action_id if len(action_id) < 64 else action_id[:-1]) + str(i)
            action_id = action_id[-64:]
            i += 3
        seen.add(action_id)
        action["id"] = action_id


def _one_key_per_user_in_batch(case):
    """Keeps two elements of a batch from updating one user's `key`.

    Two elements of a batch that name the same user and the same `key`
    answer 422 (both would update the notification as it was before the
    batch), a rule across items that JSON Schema cannot state. A later
    element's repeated key gets its position appended (within 128
    characters), which keeps it 1–128 characters without U+0000.
    """
    taken = set()
    for i, element in enumerate(_batch_elements(case)):
        key = element.get("key")
        users = element.get("recipients")
        if not isinstance(key, str) or not isinstance(users, list):
            continue
        users = [u for u in users if isinstance(u, str)]
        n = i
        while any((u, key) in taken for u in users):
            key = key[: 128 - len(str(n)) - 1] + "~" + str(n)
            n += 1000
        element["key"] = key
        taken.update((u, key) for u in users)


def _one_idempotency_key_per_body(case):
    """Gives each body its own `Idempotency-Key`.

    Generated keys repeat across cases (a handful of short strings), and a
    key reused with another body rightly answers 422: a rule about two
    requests, which no single case can satisfy by its schema. A valid key
    gets a suffix derived from the body, so the same key and body still
    replay the first answer while different bodies never collide.
    Malformed keys go out unchanged and must answer 400.
    """
    key = (case.headers or {}).get("Idempotency-Key")
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.match(key):
        return
    try:
        body = json.dumps(case.body, sort_keys=True)
    except (TypeError, ValueError):
        return
    suffix = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    case.headers["Idempotency-Key"] = f"{key[:242]}-{suffix}"


def _user_ids_within_128_bytes(case):
    """Shortens user ids to at most 128 bytes of UTF-8.

    A user id is 1 to 128 bytes, but JSON Schema's `maxLength` counts
    characters, so `UserId` allows 128 characters of up to 4 bytes each.
    Dropping characters from the end keeps a drawn id valid (at least one
    character, none of them a control character) within the byte limit.
    """
    # Path parameters are kept percent-encoded, ready for the URL.
    encoded = (case.path_parameters or {}).get("user_id")
    if isinstance(encoded, str):
        try:
            user_id = unquote(encoded, errors="strict")
        except UnicodeDecodeError:
            return
        if len(user_id.encode("utf-8", "surrogatepass")) > 128:
            case.path_parameters["user_id"] = quote(_within_128_bytes(user_id), safe="")
    body = case.body
    lists = [(body, "recipients"), (body, "users")]
    lists += [(element, "recipients") for element in _batch_elements(case)]
    for holder, name in lists:
        if isinstance(holder, dict) and isinstance(holder.get(name), list):
            shortened = [_within_128_bytes(r) if isinstance(r, str) else r for r in holder[name]]
            if shortened != holder[name]:
                holder[name] = shortened


def _within_128_bytes(user_id):
    while len(user_id.encode("utf-8", "surrogatepass")) > 128:
        user_id = user_id[:-1]
    return user_id
