"""The exception-queue workbench: the layer of `exceptions` that calls the other apps.

Its core (exceptions.models, .services, .policies) imports no other app; this
package may call metering's and billing's services and selectors.
"""
