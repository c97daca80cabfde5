"""Customer channels: procurement portals (cXML, Coupa-style REST, Peppol) and e-mail, behind one
adapter interface (base.py) with one normalised status and reason set (status.py), exposed to workflows
as activities (activity.py). The portal simulator the tests and the demo use is the portal_sim package."""
