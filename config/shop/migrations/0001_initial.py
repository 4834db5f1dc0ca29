"""The shop's products (config/shop/models.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Product",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("sku", models.CharField(max_length=20, unique=True)),
                ("name", models.CharField(max_length=100)),
                ("category", models.CharField(max_length=30)),
                ("price_cents", models.PositiveIntegerField()),
                ("stock", models.PositiveIntegerField()),
            ],
            options={"ordering": ["sku"]},
        ),
    ]
