"""Gives the fuzzed user some history, for scripts/fuzz.sh.

Usage: seed.py BASE_URL ADMIN_TOKEN USER

Publishes notifications to USER, reads, unreads and deletes some of them
(so the log holds every kind of event, for the streams and long-polls to
replay), and starts a broadcast. Prints the ids it made as a TOML array,
for the fuzzer's dictionary of path ids: random UUIDs would only ever find
404s, never an existing notification to get, read, unread or delete.
"""

import json
import sys
import urllib.request

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
        },
    )
    ids.append(created["notifications"][0]["id"])
    if i == 11:
        call("POST", "/v1/me/notifications/read-all")
for id_ in ids[12:18]:
    call("POST", f"/v1/me/notifications/{id_}/read")
call("POST", f"/v1/me/notifications/{ids[12]}/unread")
call("DELETE", f"/v1/me/notifications/{ids[13]}")
broadcast = call("POST", "/v1/broadcasts", {"title": "Seeded broadcast"})
# The deleted one stays in the list: a known id that answers 404.
ids.append(broadcast["id"])
print(json.dumps(ids))
