"""Models of metering; see ../shared/DESIGN.md for what this app owns."""

from django.db import models  # noqa: F401
