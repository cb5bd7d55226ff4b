-- wrk: POST one insurance record as JSON to /predict_api.
wrk.method = "POST"
wrk.path = "/predict_api"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"age": 45, "sex": "female", "bmi": 30.5, "children": 2, "smoker": "no", "region": "southeast"}'
