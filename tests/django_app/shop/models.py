"""A small Django app using the field types whose PostgreSQL columns matter."""

import uuid

from django.db import models


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    email = models.EmailField(unique=True)
    profile = models.JSONField(default=dict)
    last_ip = models.GenericIPAddressField(null=True)
    is_vip = models.BooleanField(default=False)
    joined = models.DateTimeField()
    birthday = models.DateField(null=True)


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    total = models.DecimalField(max_digits=10, decimal_places=2)
    placed = models.DateTimeField(auto_now_add=True)
    paid = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    tags = models.JSONField(default=list)
