"""URLs of the example shop."""

from django.urls import path

from config.shop import views

app_name = "shop"
urlpatterns = [
    path("", views.index, name="index"),
    path("echo/", views.echo, name="echo"),
    path("aecho/", views.aecho, name="aecho"),
    path("api/price/<int:pk>/", views.price, name="price"),
    path("api/aprice/<int:pk>/", views.aprice, name="aprice"),
]
