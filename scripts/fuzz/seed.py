"""Gives the fuzzed user some history, for scripts/fuzz.sh.

Usage: seed.py BASE_URL ADMIN_TOKEN USER

Publishes notifications to USER (some with actions, some updated in place
by key), reads, unreads, sees, archives, snoozes, acts on and deletes some
of them, runs each bulk operation once and lets one expire (so the log
holds every kind of event, for the streams and long-polls to replay), and
starts a broadcast. Subscribes USER to the topics `news` and `team:ops`
(the fuzzer's dictionary of topics) and publishes through them, turns the
category `digest` off (a `preferences` event; a publish in it then skips
USER, unless critical), publishes a batch, and schedules three publishes:
one delivered, one canceled, one still scheduled. Prints the ids it made
as a TOML array, for the fuzzer's dictionary of path ids: random UUIDs
would only ever find 404s, never an existing notification or schedule to
change. Half of the notifications have the actions `open` and `dismiss`,
the fuzzer's dictionary of action ids.
"""

import json
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

base, token, user = sys.argv[1:4]


def call(method, path, body=None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def stamp(delta):
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


# One that expires in a moment: the server emits `expired` within 5 s.
started = time.monotonic()
call("POST", "/v1/notifications", {"recipients": [user], "title": "Seeded, expiring", "expires_at": stamp(timedelta(seconds=2))})
until = stamp(timedelta(days=7))
ids = []
for i in range(40):
    created = call(
        "POST",
        "/v1/notifications",
        {
            "recipients": [user],
            "title": f"Seeded notification {i}",
            "body": "Made before fuzzing." if i % 2 else None,
            "category": ["billing", "ops", "social"][i % 3],
            "data": {"n": i, "tags": ["a", "b"]} if i % 4 else None,
            "expires_at": "2999-01-01T00:00:00Z" if i % 5 == 0 else None,
            "actions": [
                {"id": "open", "label": "Open", "url": f"https://example.com/n/{i}"},
                {"id": "dismiss", "label": "Dismiss"},
            ]
            if i % 2
            else None,
            "key": f"seeded-{i}" if i % 7 == 0 else None,
        },
    )
    ids.append(created["notifications"][0]["id"])
    if i == 11:
        call("POST", "/v1/me/notifications/read-all")
for id_ in ids[12:18]:
    call("POST", f"/v1/me/notifications/{id_}/read")
call("POST", f"/v1/me/notifications/{ids[12]}/unread")
call("DELETE", f"/v1/me/notifications/{ids[13]}")
# An update in place by key (event `updated`), then the inbox operations.
call("POST", "/v1/notifications", {"recipients": [user], "title": "Seeded update", "key": "seeded-7", "renotify": True})
call("POST", f"/v1/me/notifications/{ids[20]}/seen")
call("POST", f"/v1/me/notifications/{ids[21]}/archive")
call("POST", f"/v1/me/notifications/{ids[22]}/archive")
call("POST", f"/v1/me/notifications/{ids[22]}/unarchive")
call("POST", f"/v1/me/notifications/{ids[24]}/snooze", {"until": until})
call("POST", f"/v1/me/notifications/{ids[26]}/snooze", {"until": until})
call("POST", f"/v1/me/notifications/{ids[26]}/unsnooze")
call("POST", f"/v1/me/notifications/{ids[23]}/actions/open")
call("POST", "/v1/me/notifications/seen-all", {"up_to_seq": 5})
call("POST", "/v1/me/notifications/archive-all", {"category": "ops", "up_to_seq": 3})
call("POST", "/v1/me/notifications/delete-all", {"category": "social", "up_to_seq": 6})
call("POST", "/v1/me/notifications/read-all", {"category": "billing"})
broadcast = call("POST", "/v1/broadcasts", {"title": "Seeded broadcast"})
# Targeting: topics, preferences (and `skipped`), critical, a batch.
for topic in ("news", "team:ops"):
    call("PUT", f"/v1/topics/{topic}/subscribers", {"users": [user, "fuzz-other"]})
call("POST", "/v1/notifications", {"topics": ["team:ops", "news"], "title": "Seeded, by topic", "category": "ops"})
call("PUT", "/v1/me/preferences/categories/digest", {"enabled": False})
skipped = call("POST", "/v1/notifications", {"recipients": [user], "title": "Seeded, turned off", "category": "digest"})
assert skipped["skipped"] == [{"user_id": user, "reason": "preferences"}], skipped
call("POST", "/v1/notifications", {"recipients": [user], "title": "Seeded, critical", "category": "digest", "critical": True})
call("POST", "/v1/notifications/batch", {"notifications": [{"recipients": [user], "title": f"Seeded batch {i}"} for i in range(3)]})
# Schedules: one delivered in a moment, one canceled, one left scheduled.
delivered = call("POST", "/v1/notifications", {"recipients": [user], "title": "Seeded, scheduled", "deliver_at": stamp(timedelta(seconds=2))})
canceled = call("POST", "/v1/notifications", {"topics": ["news"], "title": "Seeded, canceled", "deliver_at": stamp(timedelta(days=3))})
call("DELETE", f"/v1/schedules/{canceled['schedule']['id']}")
waiting = call("POST", "/v1/notifications", {"recipients": [user], "title": "Seeded, waiting", "deliver_at": stamp(timedelta(days=30))})
time.sleep(max(0.0, 8 - (time.monotonic() - started)))
assert call("GET", f"/v1/schedules/{delivered['schedule']['id']}")["status"] == "delivered"
# The deleted one stays in the list: a known id that answers 404.
ids.append(broadcast["id"])
ids += [s["schedule"]["id"] for s in (delivered, canceled, waiting)]
print(json.dumps(ids))
