"""Balsam's snippets, continued: appdef.md, transfer.md, monitoring.md and the
quickstart (see balsam_snippets.py for the rules)."""

from __future__ import annotations

from balsam_mp.errors import ValidationError
from tests.balsam_snippets import SCENARIO, Job, s

APPDEF = [  # docs/user-guide/appdef.md
    s("sleeper-sync", "appdef.md: Writing ApplicationDefinitions",
      """
      from balsam_mp.api import ApplicationDefinition

      class Sleeper(ApplicationDefinition):
          site = "polaris"
          command_template = 'sleep {{ sleeptime }} && echo goodbye'

      Sleeper.sync()
      """, check=lambda ns: ns["Sleeper"].__app_id__ is not None),
    s("sleeper-submit", "appdef.md: The submit() shortcut",
      """
      job = Sleeper.submit(workdir="test/sleep_3", sleeptime=3)
      """, check=lambda ns: ns["job"].parameters == {"sleeptime": 3}),
    s("sleeper-job-app-class", "appdef.md: The submit() shortcut",
      """
      from balsam_mp.api import Job

      Sleeper.sync()

      job = Job(workdir="test/sleep_3", app_id=Sleeper, parameters={"sleeptime": 3})
      job.save()
      """, check=lambda ns: ns["job"].app == "Sleeper"),
    s("sleeper-bulk", "appdef.md: The submit() shortcut",
      """
      jobs = [
          Sleeper.submit(workdir=f"test/{i}", sleeptime=3, save=False)
          for i in range(100)
      ]
      jobs = Job.objects.bulk_create(jobs)
      """, check=lambda ns: Job().objects.filter(app="Sleeper").count() == 100),
    s("load-by-site", "appdef.md: Loading Existing ApplicationDefinitions",
      """
      apps_by_name = ApplicationDefinition.load_by_site("polaris")
      Sleeper = apps_by_name["Sleeper"]
      """, check=lambda ns: ns["Sleeper"].submit("w/1").app == "Sleeper"),
    s("app-name-class-path", "appdef.md: Transfer Slots",
      """
      Job.objects.create(
          workdir="ensemble/1",
          app_name="sim.MySimulation",
          transfers={
              # Using 'laptop' alias defined in settings.yml
              "input_file": "laptop:/path/to/input.dat",
              "result": "laptop:/path/to/output.json",
          },
      )
      """, check=lambda ns: Job().objects.get(workdir="ensemble/1").app == "MySimulation"),
    s("description", "appdef.md: The Class Path",
      '''
      class MySimulation(ApplicationDefinition):
          """
          Some description of the app goes here
          """
          site = "polaris"

      MySimulation.sync()
      ''', check=lambda ns: "Some description" in ns["App"].objects.get(
          name="MySimulation").description),
    s("other-site-refused", "appdef.md: The Site Identifier",
      """
      class MySimulation(ApplicationDefinition):
          site = "theta"

      MySimulation.sync()
      """, raises=(ValidationError, "site 'theta' is not this site \\('polaris'\\)")),
    s("python-app-result", "appdef.md: Python Applications",
      """
      class Adder(ApplicationDefinition):
          site = "polaris"

          def run(self, x, y):
              return x + y

      job = Adder.submit("test/5plus5", x=5, y=5)
      assert job.result() == 10  # This will block until a BatchJob starts
      """, raises=(ValueError, "runs no apps")),
]

TRANSFER = [  # docs/user-guide/transfer.md
    s("active-stage-ins", "transfer.md: Transfer Slots",
      """
      from balsam_mp.api import TransferItem

      for item in TransferItem.objects.filter(direction="in",  state="active"):
          print(f"File {item.remote_path} is currently staging in via task ID: {item.task_id}")
      """),
]

MONITORING = [  # docs/user-guide/monitoring.md
    s("events-by-tags", "monitoring.md: The EventLog API",
      """
      from balsam_mp.api import EventLog

      for evt in EventLog.objects.filter(tags={"experiment": "foo"}):
          print(evt.job_id)      # Job ID
          print(evt.timestamp)   # Time of state change (UTC)
          print(evt.from_state)  # From which state the job transitioned
          print(evt.to_state)    # To which state
          print(evt.data)        # optional payload
      """, setup=SCENARIO, check=lambda ns: [
          (e.from_state, e.to_state) for e in ns["EventLog"].objects.filter(
              tags={"experiment": "foo"})] == [("STAGED_IN", "PREPROCESSED"),
                                               ("CREATED", "STAGED_IN")]),
    s("events-by-job-ids", "monitoring.md: Example Queries",
      """
      events = EventLog.objects.filter(job_id=[123, 124, 125])
      """, check=lambda ns: ns["events"].count() == 0),
    s("events-by-two-tags", "monitoring.md: Example Queries",
      """
      events = EventLog.objects.filter(tags={"experiment": "ffn-1", "scale_nodes": "512"})
      """, setup="make(2, tags={'experiment': 'ffn-1', 'scale_nodes': 512})",
      check=lambda ns: ns["events"].count() == 2),
    s("events-by-transition", "monitoring.md: Example Queries",
      """
      starts = EventLog.objects.filter(to_state="RUNNING") # all Job startup events
      restarts = EventLog.objects.filter(from_state="RESTART_READY", to_state="RUNNING")
      """, setup=SCENARIO,
      check=lambda ns: (ns["starts"].count(), ns["restarts"].count()) == (2, 0)),
    s("events-since-yesterday", "monitoring.md: Example Queries",
      """
      from datetime import datetime, timedelta

      yesterday = datetime.utcnow() - timedelta(days=1)
      recent = EventLog.objects.filter(timestamp_after=yesterday)
      """, setup=SCENARIO, check=lambda ns: ns["recent"].count() == 10),
    s("events-by-batch-job", "monitoring.md: Example Queries",
      """
      EventLog.objects.filter(batch_job_id=123)
      """, raises=(ValidationError, "EventLog has no field 'batch_job_id'")),
]

QUICKSTART = [  # docs/tutorials/quickstart.md, on a site named my-site
    s("quickstart-hello", "quickstart.md: Set up your App",
      """
      from balsam_mp.api import ApplicationDefinition

      class Hello(ApplicationDefinition):
          site = "my-site"
          command_template = "echo Hello, {{ say_hello_to }}!"

      Hello.sync()
      """, site="my-site", check=lambda ns: ns["App"].objects.get(name="Hello").id == 123),
    s("quickstart-submit", "quickstart.md: Add Jobs",
      """
      class VecNorm(ApplicationDefinition):
          site = "my-site"

          def run(self, vec):
              return sum(x**2 for x in vec)**0.5

      VecNorm.sync()
      hello = Hello.submit(workdir="demo/hello", say_hello_to="world")
      norm = VecNorm.submit(workdir="demo/norm", vec=[3, 4])
      """, site="my-site", check=lambda ns: Job().objects.count() == 2),
]
