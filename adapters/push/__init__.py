"""Browser push notifications (Web Push with VAPID): the deployment's key, the devices people
subscribed, sending, and the notifier that decides from the event log what to send."""
