-- wrk: POST one insurance record to /predict_api with an accepted API key.
wrk.method = "POST"
wrk.path = "/predict_api"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key-0123456789abcdef0123456789abcdef"
wrk.body = '{"age": 45, "sex": "female", "bmi": 30.5, "children": 2, "smoker": "no", "region": "southeast"}'
