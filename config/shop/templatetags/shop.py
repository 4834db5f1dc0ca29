"""Template helpers that call the per-request cached lookup while the page renders."""

from django import template

from config.shop import services

register = template.Library()


@register.filter
def category_label(code: str) -> str:
    """``{{ product.category|category_label }}``: the request-cached label lookup."""
    return services.lookup_category(code, source="template")


@register.simple_tag
def lookup_counts() -> dict[str, int]:
    """``{% lookup_counts as counts %}``: lookups made by this request up to this point of the page."""
    return services.lookup_counts()
