"""The Frobs integration: the worked example built on the generic machinery.

Webhooks on topic ``frobs`` carry ``{"type": "add" | "delete" | "modify", "id"}``;
``FrobsEventRouter`` sends them to ``frobs.<type>``; each ``FrobsEntityProvider``
(one per configured environment) reads the frob from the Frobs service and
applies a delta, and runs a scheduled full sync of the whole listing.
"""
