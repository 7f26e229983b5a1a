"""Drive the Django app against a database given on the command line.

    python djscript.py sqlite PATH create     # migrate and fill a SQLite database
    python djscript.py postgres DSN-PARTS check   # use the migrated PostgreSQL copy

Run as a separate process: Django's settings are global to a process.
"""

import datetime as dt
import decimal
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import django
from django.conf import settings

UTC = dt.UTC
FIXED_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def configure(kind: str, target: str) -> None:
    if kind == "sqlite":
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": target}
    else:
        params = json.loads(target)
        database = {"ENGINE": "django.db.backends.postgresql", **params}
    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "shop"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        MIGRATION_MODULES={"shop": "shop_migrations"},
    )
    django.setup()


def create() -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    # shop is importable once the sys.path line above has run, not for mypy
    from shop.models import Customer, Order  # type: ignore[import-not-found]

    call_command("makemigrations", "shop", verbosity=0)
    call_command("migrate", verbosity=0)
    User.objects.create_user("ann", "ann@example.com", "correct horse")
    vip = Customer.objects.create(
        id=FIXED_ID,
        email="vip@example.com",
        profile={"plan": "gold", "n": [1, 2]},
        last_ip="2001:db8::1",
        is_vip=True,
        joined=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        birthday=dt.date(1990, 1, 2),
    )
    plain = Customer.objects.create(
        email="plain@example.com", last_ip="10.1.2.3", joined=dt.datetime(2025, 1, 1, tzinfo=UTC)
    )
    Order.objects.create(customer=vip, total=decimal.Decimal("19.99"), paid=True, tags=["a"])
    Order.objects.create(customer=plain, total=decimal.Decimal("0.50"), notes="é 😀")


def check() -> None:
    from django.contrib.auth import authenticate
    from django.core.management import call_command
    from shop.models import Customer, Order  # mypy reports it once, in create()

    call_command("migrate", check=True, verbosity=0)  # nothing unapplied: history intact
    vip = Customer.objects.get(pk=FIXED_ID)
    assert vip.profile == {"plan": "gold", "n": [1, 2]}, vip.profile
    assert vip.last_ip == "2001:db8::1", vip.last_ip
    assert vip.is_vip is True
    assert vip.joined == dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), vip.joined
    assert vip.birthday == dt.date(1990, 1, 2)
    assert Customer.objects.filter(profile__plan="gold").count() == 1  # a jsonb lookup
    assert Customer.objects.filter(last_ip="10.1.2.3").count() == 1
    assert Order.objects.get(notes="é 😀").total == decimal.Decimal("0.50")
    assert Order.objects.filter(tags__contains=["a"]).count() == 1
    assert authenticate(username="ann", password="correct horse") is not None
    new = Customer.objects.create(email="new@example.com", joined=dt.datetime.now(UTC))
    order = Order.objects.create(customer=new, total=decimal.Decimal("1.00"))
    assert order.pk == 3, order.pk  # the sequence continues after the loaded rows
    print("django ok")


if __name__ == "__main__":
    configure(sys.argv[1], sys.argv[2])
    {"create": create, "check": check}[sys.argv[3]]()
