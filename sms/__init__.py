"""SMS providers (dev inbox, Twilio, Mitake) for the verification codes; built once in app.py
and handed to the verification flow as `services.sms`."""
