"""What must last: records in SQL, the audit log, passwords and sessions."""
