"""The edit forms: the profile (its save refreshes the cached card) and a product's price and stock."""

from django import forms
from django.contrib.auth.models import User

from config.shop.models import Product


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["first_name", "last_name", "email"]


class ProductForm(forms.ModelForm):
    """Price and stock of a product; saving it invalidates the pages built from it (no key named)."""

    class Meta:
        model = Product
        fields = ["name", "price_cents", "stock"]
