// placeholder: replaced by the browser client
