"""Subscribers: their lifecycle (double opt-in, unsubscribe, preferences, suppression), CSV
import and export, the sign-up queue, the tokens in their links and their rhythms."""
