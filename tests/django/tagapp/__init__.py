"""Models of the tag tests (tests/django/test_django_tags.py): created in the test database."""
