"""The app's pages in navigation order: (script, title, icon). Emoji icons: no remote font fetch."""

PAGES = [
    ("pages/data.py", "Data", "🗂️"),
    ("pages/attribution.py", "Attribution", "🧭"),
    ("pages/optimizer.py", "Optimizer", "🎯"),
    ("pages/review.py", "Review & execute", "✅"),
    ("pages/history.py", "History", "🕘"),
    ("pages/schedules.py", "Schedules", "⏱️"),
    ("pages/connections.py", "Connections", "🔌"),
    ("pages/tracking.py", "Tracking", "📡"),
    ("pages/access.py", "Access & audit", "🔐"),
]
