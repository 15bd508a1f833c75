"""Admin: outbound messages and the resend queue."""
