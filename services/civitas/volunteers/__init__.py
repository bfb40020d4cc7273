"""volunteers: volunteers, service activities, attendance, verified hours, certificates."""
