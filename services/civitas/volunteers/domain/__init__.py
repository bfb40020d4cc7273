"""The volunteers domain: volunteers, activities, the certificate book. No transport."""
