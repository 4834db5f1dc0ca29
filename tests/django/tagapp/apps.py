from django.apps import AppConfig


class TagAppConfig(AppConfig):
    name = "tests.django.tagapp"
    label = "tagapp"
    default_auto_field = "django.db.models.BigAutoField"
