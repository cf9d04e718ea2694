"""Mail that comes back: the inbound SMTP server, reading bounces and complaints, the
providers' webhooks, and applying each report to its subscriber."""
