"""A tiny event-level journey file shared by the Data page, CLI and browser tests.

Three users: u1 (google cpc -> email -> purchase 120.50), u2 (facebook paid social -> purchase 80),
u3 (organic visit, no purchase). Two conversions worth 200.50 in all.
"""

EVENTS_CSV = """user_id,timestamp,event_type,source,medium,campaign,value,order_id
u1,2026-05-01T10:00:00Z,visit,google,cpc,brand,,
u1,2026-05-02T10:00:00Z,visit,newsletter,email,may,,
u1,2026-05-03T10:00:00Z,purchase,,,,120.50,o-1
u2,2026-05-01T09:00:00Z,visit,facebook,paid_social,spring,,
u2,2026-05-04T09:00:00Z,purchase,,,,80,o-2
u3,2026-05-02T08:00:00Z,visit,google,organic,,,
"""
