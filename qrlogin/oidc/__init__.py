"""qrlogin as an OpenID Connect provider: the authorization code flow around the QR
login page (``views``, on Authlib: ``provider``), its relying parties (``clients``), its
signing keys (``signing``), back-channel logout (``backchannel``), put together by
``service``."""
