"""A blog: posts with topics (many-to-many), enough for save, delete and m2m invalidation."""

from __future__ import annotations

from django.db import models


class Topic(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "tagapp"


class BlogPost(models.Model):
    title = models.CharField(max_length=100)
    topics = models.ManyToManyField(Topic, related_name="posts", blank=True)

    class Meta:
        app_label = "tagapp"


class FeaturedPost(BlogPost):
    """Proxy: saving through it invalidates BlogPost's tags."""

    class Meta:
        proxy = True
        app_label = "tagapp"
