"""Admin: data subject requests received through the Firehose and what their erasures removed."""
