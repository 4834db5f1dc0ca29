"""Model-save invalidation: tags made from models, bumped when their rows change.

* Tags: a model class is ``"app_label.model"``, an instance ``"app_label.model:pk"`` (of the
  concrete model, so a proxy and its model share them). ``@region("functions",
  invalidate_on=[BlogPost])`` and ``tags=lambda post: [post]`` use them (:mod:`regions.tags`).
* Which models are watched: all of them. The process that saves a row is often not one that called
  the cached function (an admin worker, a shell, a task queue), so it cannot know which tags are in
  use; a bump of a tag nobody created costs one ``incr`` that finds nothing.
* When: ``post_save``, ``post_delete`` and ``m2m_changed`` (both sides, and the through model)
  bump the instance's tags and its model's, and those of its parent models, inside
  ``transaction.on_commit``: a rolled-back transaction invalidates nothing, and a value another
  process computed from the old rows during the transaction is invalidated once the new rows are
  visible. Outside a transaction Django runs the callback at once.
* Until it commits, the thread that wrote reads none of those tags' entries from the cache (its
  transaction sees rows nobody else does): calls compute without reading or storing.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable
from typing import Any

from django.db import connections, transaction
from django.db.models import Model
from django.db.models.base import ModelBase
from django.db.models.signals import m2m_changed, post_delete, post_save

import regions
from regions import tags

logger = logging.getLogger("django_regions")
_local = threading.local()


def model_tag(model: type[Model]) -> str:
    """``"app_label.model"`` of the concrete model."""
    return model._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]


def instance_tag(obj: Model) -> str:
    """``"app_label.model:pk"``; an unsaved instance has no tag."""
    if obj.pk is None:
        raise tags.TagError(
            f"an unsaved {type(obj).__name__} has no primary key, so it is no tag; save it first, "
            "or tag with its model class"
        )
    return f"{model_tag(type(obj))}:{obj.pk}"


def tags_of_row(model: type[Model], pks: Iterable[Any] | None) -> set[str]:
    """The tags a change of rows ``pks`` of ``model`` invalidates (``None``: unknown rows)."""
    out: set[str] = set()
    for cls in (model, *model._meta.get_parent_list()):
        label = model_tag(cls)
        out.add(label)
        for pk in pks or ():
            out.add(f"{label}:{pk}")
    return out


def invalidate(names: set[str], using: str) -> None:
    """Bump ``names`` once the transaction of ``using`` commits; mark them dirty for this thread
    until then.

    The tags of one transaction gather in one set, bumped by the first of its callbacks that runs
    (the others find it empty): a transaction that changes 10,000 rows makes one bump of their
    tags (memcached: pipelined), not 10,000. A callback dropped with a rolled-back savepoint may
    leave its tags in the set: they are bumped with the rest (more invalidation, never less).
    """
    if not names:
        return
    connection = connections[using]
    in_transaction = connection.in_atomic_block
    if in_transaction:
        dirty = _dirty()
        marked = dirty.get(using)
        transaction_now = _outermost(connection)
        if marked is None or marked[0] is not transaction_now:
            marked = dirty[using] = (transaction_now, set())
        marked[1].update(names)
    batches = _batches()
    batch = batches.get(using)
    if batch is None or not in_transaction:
        batch = batches[using] = set()
    batch.update(names)
    transaction.on_commit(functools.partial(_flush, using, batch), using=using)


def _flush(using: str, batch: set[str]) -> None:
    batches = _batches()
    if batches.get(using) is batch:
        del batches[using]
    if not batch:
        return
    names = sorted(batch)
    batch.clear()
    try:
        manager = regions.get_manager()
    except regions.RegionError:
        return  # regions disabled (invalid settings): nothing is cached
    if not manager.invalidate_tags(*names):
        logger.warning("%d tag(s) not invalidated everywhere yet (a cache server is down)", len(names))


def _batches() -> dict[str, set[str]]:
    batches = getattr(_local, "batches", None)
    if batches is None:
        batches = _local.batches = {}
    return batches


def _dirty() -> dict[str, tuple[object, set[str]]]:
    """Per database: (the transaction, the tags whose rows this thread changed in it)."""
    dirty = getattr(_local, "dirty", None)
    if dirty is None:
        dirty = _local.dirty = {}
    return dirty


def _outermost(connection: Any) -> object:
    """What tells this transaction apart from the next one on the connection: its outermost
    ``atomic`` block (``None`` where Django does not keep them)."""
    blocks = getattr(connection, "atomic_blocks", None)
    return blocks[0] if blocks else None


def _uncached(names: tuple[str, ...]) -> bool:
    """Whether this thread changed rows behind ``names`` in a transaction still open."""
    dirty = getattr(_local, "dirty", None)
    if not dirty:
        return False
    for using in list(dirty):
        connection = connections[using]
        marker, tags_changed = dirty[using]
        if not connection.in_atomic_block or _outermost(connection) is not marker:
            del dirty[using]  # committed or rolled back (another transaction now): the cache is right
        elif not tags_changed.isdisjoint(names):
            return True
    return False


def _saved(sender: type[Model], instance: Model, using: str, **_: Any) -> None:
    invalidate(tags_of_row(sender, [instance.pk]), using)


def _m2m_changed(
    sender: type[Model], instance: Model, action: str, reverse: bool, model: type[Model],
    pk_set: set[Any] | None, using: str, **_: Any,
) -> None:
    if action == "pre_clear":  # the rows about to be unlinked are known only now
        invalidate(tags_of_row(model, _linked(sender, instance, model, using)), using)
        return
    if not action.startswith("post_"):
        return
    names = tags_of_row(type(instance), [instance.pk]) | tags_of_row(model, pk_set)
    names |= tags_of_row(sender, None)  # the through model
    invalidate(names, using)


def _linked(through: type[Model], instance: Model, model: type[Model], using: str) -> list[Any] | None:
    """Primary keys of the ``model`` rows linked to ``instance`` through ``through`` (``None``
    when the through model does not say which side is which: a relation of a model to itself)."""

    def side(cls: type[Model]) -> list[Any]:
        concrete = cls._meta.concrete_model
        return [f for f in through._meta.fields if f.is_relation and f.related_model is concrete]

    own, other = side(type(instance)), side(model)
    if len(own) != 1 or len(other) != 1 or own[0] is other[0]:
        return None
    rows = through._default_manager.using(using).filter(**{own[0].attname: instance.pk})
    return list(rows.values_list(other[0].attname, flat=True))


def register() -> None:
    """Tag adapters for models, and the receivers (idempotent). Called by the app's ``ready()``."""
    tags.unregister(ModelBase)
    tags.unregister(Model)
    tags.register(ModelBase, model_tag)
    tags.register(Model, instance_tag)
    tags.set_uncached_check(_uncached)
    post_save.connect(_saved, dispatch_uid="django_regions.tags.post_save", weak=False)
    post_delete.connect(_saved, dispatch_uid="django_regions.tags.post_delete", weak=False)
    m2m_changed.connect(_m2m_changed, dispatch_uid="django_regions.tags.m2m_changed", weak=False)
